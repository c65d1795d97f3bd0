"""Federated training of a bundle with NVIDIA FLARE (FedAvg), each site running the bundle's own ``train.json``.

- :mod:`medzoo.federated.job`: the FLARE job, its run in FLARE's simulator on per-site phantom data, its export for
  real sites;
- :mod:`medzoo.federated.client`: the script each site runs (MONAI's ``MonaiAlgo`` driven by FLARE's Client API);
- :mod:`medzoo.federated.network`: the bundle's network for the server.

Needs the ``fl`` extra (``nvflare``).
"""
