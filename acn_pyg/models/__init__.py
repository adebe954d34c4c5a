from acn_pyg.models.atom_cloud_net import AtomCloudNet

__all__ = ["AtomCloudNet"]
