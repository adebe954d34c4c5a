from acn_pyg.models.atom_cloud_net import AtomCloudNet
from acn_pyg.models.grow import grown_state_dict

__all__ = ["AtomCloudNet", "grown_state_dict"]
