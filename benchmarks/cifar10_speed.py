"""Time the faithful CIFAR-10 recipe (cnn8, batch 128, SGD, cosine, clip 5, crop+flip) three ways.

1. A reference-style loop: torchvision transforms on PIL images through a DataLoader, fp32, eager,
   ``.item()`` every step; timed for ``--reference-epochs`` and extrapolated to ``--epochs``.
2. jal-plugins' engine, one run: uint8 data on the device, batched tensor augmentation, bf16 autocast
   and channels_last on CUDA, no host sync inside an epoch.
3. The stacked engine: ``--stack`` runs (``auto``: the measured size) in one forward/backward pass;
   seconds per run are the stack's time divided by its runs.

    python benchmarks/cifar10_speed.py --data ../shared/data/cifar10-jpeg.npz --json out.json   # GPU
    python benchmarks/cifar10_speed.py --epochs 1 --subset 2000 --device cpu --stack 2           # a short look

``--data`` takes any source of the ``cifar10`` dataset plugin (the JPEG npz, python batches, ...).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from jal_plugins import create_loss, create_model
from jal_plugins.datasets import cifar10
from jal_plugins.engine import DeviceData, Stack, TrainConfig, resolve_device, seeded_init


def load(source: str, subset: int | None):
    """CIFAR-10 as uint8 NCHW arrays (any source the ``cifar10`` dataset plugin reads), optionally cut."""
    data = cifar10(source=source)
    n, nt = (None, None) if subset is None else (subset, subset)
    return data.x_train[:n], data.y_train[:n], data.x_test[:nt], data.y_test[:nt], data.mean, data.std


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def engine_run(x, y, xt, yt, epochs, device, mean, std, runs: int = 1):
    """Seconds and test accuracies of ``runs`` seeds trained as one stack (1: a single run)."""
    config = TrainConfig(epochs=epochs, batch_size=128, lr=0.01, weight_decay=1e-4, augment="crop-flip")
    models = [seeded_init(seed, lambda: create_model("cnn8", 10, 3)) for seed in range(runs)]
    losses = [create_loss("ce", 10, reduction="none") for _ in range(runs)]
    stack = Stack(models, losses, [config] * runs, list(range(runs)), device, input_shape=tuple(x.shape[1:]))
    train, test = DeviceData(x, y, device, mean, std), DeviceData(xt, yt, device, mean, std)
    sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        stack.train_epoch(train)
    accuracies = stack.accuracies(test)
    sync(device)
    return time.perf_counter() - start, accuracies


def auto_size(x, device) -> int:
    """The stack size ``--stack auto`` would train CIFAR-10's cnn8 with (measured)."""
    from jal_plugins.autostack import choose_stack_size

    def parts():
        net = seeded_init(0, lambda: create_model("cnn8", 10, 3))
        return net, create_loss("ce", 10, reduction="none"), TrainConfig(batch_size=128, augment="crop-flip"), 0

    return choose_stack_size(("cifar10", "cnn8", str(device)), parts, lambda: torch.randn(128, *x.shape[1:]), 64,
                             device, tuple(x.shape[1:]))  # fmt: skip


def reference_run(x, y, xt, yt, epochs, device, workers, mean, std):
    from PIL import Image
    from torchvision import transforms

    class PILDataset(torch.utils.data.Dataset):
        def __init__(self, images, labels, transform):
            self.images, self.labels, self.transform = images, labels, transform

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return self.transform(Image.fromarray(self.images[i].transpose(1, 2, 0))), int(self.labels[i])

    norm = transforms.Normalize(mean, std)
    train_tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), norm])  # fmt: skip
    loader = torch.utils.data.DataLoader(PILDataset(x, y, train_tf), batch_size=128, shuffle=True,
                                         num_workers=workers, persistent_workers=workers > 0)  # fmt: skip
    test_loader = torch.utils.data.DataLoader(
        PILDataset(xt, yt, transforms.Compose([transforms.ToTensor(), norm])), batch_size=256, num_workers=workers
    )
    torch.manual_seed(0)
    model = create_model("cnn8", 10, 3).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    criterion = torch.nn.CrossEntropyLoss()
    sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            loss.item()  # the per-step host sync of the reference loops
        scheduler.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for xb, yb in test_loader:
            correct += (model(xb.to(device)).argmax(1).cpu() == yb).sum().item()
    sync(device)
    return time.perf_counter() - start, correct / len(yt)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/cifar10-jpeg.npz")
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--reference-epochs", type=int, default=3, help="epochs of the reference loop, extrapolated")
    parser.add_argument("--subset", type=int, help="first N train and test images only")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the reference loop")
    parser.add_argument("--stack", default="auto", help="runs of the stacked timing: a number or auto")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    x, y, xt, yt, mean, std = load(args.data, args.subset)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {"device": name, "torch": torch.__version__, "train_images": len(y), "epochs": args.epochs}
    print(f"device {device} ({name}), torch {torch.__version__}, {len(y)} train / {len(yt)} test images, {args.epochs} epochs")
    if not args.skip_reference:
        ref, ref_acc = reference_run(x, y, xt, yt, args.reference_epochs, device, args.workers, mean, std)
        report["reference_seconds"] = ref * args.epochs / args.reference_epochs
        print(f"reference-style loop : {report['reference_seconds']:9.1f} s per run "
              f"({args.reference_epochs} epochs timed, extrapolated)")  # fmt: skip
    one, (acc,) = engine_run(x, y, xt, yt, args.epochs, device, mean, std)
    report.update(engine_seconds=one, engine_accuracy=acc)
    print(f"engine, one run      : {one:9.1f} s per run  {len(y) * args.epochs / one:10,.0f} img/s  test {acc:.2%}")
    runs = auto_size(x, device) if args.stack == "auto" else int(args.stack)
    if runs > 1:
        total, accs = engine_run(x, y, xt, yt, args.epochs, device, mean, std, runs)
        report.update(stack_size=runs, stack_seconds_per_run=total / runs, stack_accuracies=accs)
        print(f"engine, stack of {runs:<3d} : {total / runs:9.1f} s per run  {runs * len(y) * args.epochs / total:10,.0f} img/s  "
              f"test {sum(accs) / runs:.2%} mean")  # fmt: skip
    if "reference_seconds" in report:
        best = report.get("stack_seconds_per_run", one)
        print(f"speed-up over the reference loop: {report['reference_seconds'] / best:.1f}x")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
