from acn_pyg.nn.conv.atom_cloud_conv import AtomCloudConv
from acn_pyg.nn.conv.symmetric_product import SymmetricProduct
from acn_pyg.nn.conv.tensor_product import ChannelwiseTensorProduct

__all__ = ["AtomCloudConv", "ChannelwiseTensorProduct", "SymmetricProduct"]
