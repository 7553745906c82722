"""Sweep RealNet's scoring settings on saved checkpoints: residual_weight x score_topk.

``residual_weight`` and ``score_topk`` change only how a trained RealNet turns its
outputs into the anomaly map and the image score, so they can be chosen on saved
models without training. This runs each checkpoint once over a split (by default
the **validation** half, so the choice is not made on the test half that
``detection_quality.py`` reports), keeps the discriminator's probability and the
scaled residual per pixel, and prints pixel AUROC (after ``--map-sigma`` smoothing)
for every residual weight, and image AUROC for every weight and top k (k = 0: the
plain max). Run it alone:

    python benchmarks/scoring_sweep.py --root ../shared/datasets/deeppcb --split val \\
        --realnet-args '{"neighbour_weight": 0, "gaussian_weight": 0, "score_gaussian_weight": 0}' CHECKPOINT [...]
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from detection_quality import folder
from rescore_realnet import check_paths, checkpoint_parser


def main() -> None:
    parser = checkpoint_parser(__doc__, "the architecture, as JSON")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--map-sigma", type=float, default=4.0)
    parser.add_argument("--weights", default="0,0.02,0.05,0.1", help="residual weights")
    parser.add_argument("--topk", default="0,10,25,50,100,200", help="image score top k (0: plain max)")
    args = parser.parse_args()
    check_paths(args)
    weights = [float(v) for v in args.weights.split(",")]
    ks = [int(v) for v in args.topk.split(",")]
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)

    from torchmetrics.functional.classification import binary_auroc

    from anomalysynth.filters import gaussian_blur
    from anomalysynth.models import RealNet
    from anomalysynth.models.realnet.torch_model import mix_residual, reconstruction_residuals

    datamodule = folder(args.root, args.image_size, args.batch)
    datamodule.setup()
    loader = datamodule.val_dataloader() if args.split == "val" else datamodule.test_dataloader()
    print(f"split: {args.split}; image AUROC by top k (0: plain max) | pixel AUROC at map_sigma={args.map_sigma}")
    for path in args.checkpoints:
        model = RealNet(**args.realnet_args)
        model.load_weights(path)
        if not bool(model.model.residual_scale_done):
            model.measure_residual_scale(datamodule.train_dataloader())
        model.eval()
        probs, residuals, masks, labels = [], [], [], []
        with torch.inference_mode():
            for batch in loader:
                out = model.model(model._pre(batch.image))
                levels = reconstruction_residuals(out.features, out.reconstructions)
                probs.append(out.logits.softmax(dim=1)[:, 1:2])
                residuals.append(model.model.residual_map(levels, batch.image.shape[-2:]))
                masks.append(batch.gt_mask.view(len(batch.image), 1, *batch.image.shape[-2:]))
                labels.append(batch.gt_label)
        prob, residual, mask, label = torch.cat(probs), torch.cat(residuals), torch.cat(masks), torch.cat(labels)
        print(f"\n{path}")
        print(f"{'weight':>8s} " + " ".join(f"{'top ' + str(k):>8s}" for k in ks) + f" | {'pixel':>8s}")
        for w in weights:
            amap = mix_residual(prob, residual, w)
            flat = amap.flatten(1)
            scores = [
                flat.amax(dim=1) if k == 0 else flat.topk(min(k, flat.shape[1]), dim=1).values.mean(dim=1) for k in ks
            ]
            image = [float(binary_auroc(score, label.long())) for score in scores]
            smooth = gaussian_blur(amap, args.map_sigma) if args.map_sigma > 0 else amap
            pixel = float(binary_auroc(smooth.flatten(), mask.flatten().long()))
            print(f"{w:8.3f} " + " ".join(f"{v:8.4f}" for v in image) + f" | {pixel:8.4f}", flush=True)


if __name__ == "__main__":
    main()
