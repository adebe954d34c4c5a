"""The README's example of AtomCloudConv in a user's own PyG model runs as
printed."""
import pathlib
import re

import torch

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_conv_example_runs():
    text = README.read_text()
    code = re.search(r"```python\n(.*?class MyModel.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    model = namespace["MyModel"]()
    z = torch.tensor([8, 1, 1, 6, 1, 1, 1, 1])
    pos = torch.randn(8, 3)
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    assert model(z, pos, batch).shape == (2, 1)
