"""Convert a small MLP and a small CNN to neural graphs, permute hidden neurons, draw them.

    python examples/convert_permute_draw.py --out outputs/graphs

Shows that a hidden-neuron permutation changes the graph's labelling but not
the function the network computes, and saves PNG drawings of both graphs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch_geometric.data import Batch  # noqa: E402

import neuralgraph as ng  # noqa: E402
from neuralgraph.visualize import draw  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/graphs"), help="folder for the PNGs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)

    mlp = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.GELU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))
    graphs = [ng.to_graph(mlp, edge_dim=9), ng.to_graph(cnn, edge_dim=9)]
    batch = Batch.from_data_list(graphs)
    print(f"batch of 2 graphs: {batch.num_nodes} neurons, {batch.num_edges} weights")

    permuted, _ = ng.permute_hidden(batch, generator=torch.Generator().manual_seed(args.seed))
    for name, model, original, rebuilt in zip(("mlp", "cnn"), (mlp, cnn), graphs, ng.to_models(permuted)):
        x = torch.randn(8, 3) if name == "mlp" else torch.randn(8, 1, 12, 12)
        gap = (model(x) - rebuilt(x)).abs().max().item()
        print(f"{name}: permuted network differs from the original by {gap:.2e} (same function)")
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        draw(original, ax=axes[0], title=f"{name}: original")
        draw(permuted.get_example(0 if name == "mlp" else 1), ax=axes[1], title=f"{name}: hidden neurons permuted")
        fig.tight_layout()
        path = args.out / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        print(f"saved {path}")


if __name__ == "__main__":
    main()
