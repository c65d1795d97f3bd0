"""3D CT / MRI volumes: synthetic phantoms, MSD datalists and normalisation, networks, MedicalNet import, handlers."""

from . import datasets, handlers, medicalnet, networks, phantoms

__all__ = ["datasets", "handlers", "medicalnet", "networks", "phantoms"]
