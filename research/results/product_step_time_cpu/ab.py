"""Train-step time with and without products, interleaved in one process."""
import time

import torch
from torch_geometric.loader import DataLoader

from acn_pyg.datasets import QM9
from acn_pyg.models import AtomCloudNet

torch.set_num_threads(1)
ds = QM9('data/QM9')[:1024]
for bs in (8, 128):
    batches = [b for _, b in zip(range(6), DataLoader(ds, batch_size=bs, shuffle=True))]
    models = {pc: AtomCloudNet(hidden_irreps='64x0e+16x1o+16x2e', product_channels=pc)
              for pc in (0, 16)}
    opt = {pc: torch.optim.AdamW(m.parameters(), 1e-3) for pc, m in models.items()}
    times = {0: [], 16: []}
    for rep in range(8):
        for pc, m in models.items():
            t = time.perf_counter()
            for b in batches:
                opt[pc].zero_grad()
                m(b.z, b.pos, b.batch).sum().backward()
                opt[pc].step()
            times[pc].append(time.perf_counter() - t)
    med = {pc: sorted(v[2:])[len(v[2:]) // 2] for pc, v in times.items()}
    print(f"batch {bs}: step ms without {med[0] / 6 * 1e3:.1f}, with products "
          f"{med[16] / 6 * 1e3:.1f}, ratio {med[16] / med[0]:.2f}")
