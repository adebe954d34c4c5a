from acn_pyg.transforms.many_body_features import ManyBodyFeatures

__all__ = ["ManyBodyFeatures"]
