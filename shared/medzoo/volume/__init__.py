"""3D CT / MRI volumes: synthetic phantoms, MSD datalists and normalisation, networks, MedicalNet import, handlers."""

from . import attention_unet, datasets, handlers, medicalnet, networks, phantoms, transforms

__all__ = ["attention_unet", "datasets", "handlers", "medicalnet", "networks", "phantoms", "transforms"]
