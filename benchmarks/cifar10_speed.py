"""Time the faithful CIFAR-10 recipe (cnn8, batch 128, SGD, cosine, clip 5, crop+flip) two ways.

1. jal-plugins' engine: uint8 data on the device, batched tensor augmentation, bf16 autocast and
   channels_last on CUDA, no host sync inside an epoch.
2. A reference-style loop: torchvision transforms on PIL images through a DataLoader, fp32, eager,
   ``.item()`` every step.

    python benchmarks/cifar10_speed.py --data ../shared/data/cifar10-jpeg.npz            # 120 epochs
    python benchmarks/cifar10_speed.py --epochs 1 --subset 5000 --device cpu           # a short look

``--data`` takes any source of the ``cifar10`` dataset plugin (the JPEG npz, python batches, ...).
"""

from __future__ import annotations

import argparse
import time

import torch

from jal_plugins import create_loss, create_model
from jal_plugins.datasets import cifar10
from jal_plugins.engine import DeviceData, Trainer, TrainConfig, resolve_device, seeded_init

def load(source: str, subset: int | None):
    """CIFAR-10 as uint8 NCHW arrays (any source the ``cifar10`` dataset plugin reads), optionally cut."""
    data = cifar10(source=source)
    n, nt = (None, None) if subset is None else (subset, subset)
    return data.x_train[:n], data.y_train[:n], data.x_test[:nt], data.y_test[:nt], data.mean, data.std


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def engine_run(x, y, xt, yt, epochs, device, mean, std):
    config = TrainConfig(epochs=epochs, batch_size=128, lr=0.01, weight_decay=1e-4, augment="crop-flip")
    model = seeded_init(0, lambda: create_model("cnn8", 10, 3))
    trainer = Trainer(model, create_loss("ce", 10, reduction="none"), config, device)
    train, test = DeviceData(x, y, device, mean, std), DeviceData(xt, yt, device, mean, std)
    sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        trainer.train_epoch(train)
    acc = trainer.accuracy(test)
    sync(device)
    return time.perf_counter() - start, acc


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
    parser.add_argument("--subset", type=int, help="first N train and test images only")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the reference loop")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    x, y, xt, yt, mean, std = load(args.data, args.subset)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"{len(y)} train / {len(yt)} test images, {args.epochs} epochs")  # fmt: skip
    fast, fast_acc = engine_run(x, y, xt, yt, args.epochs, device, mean, std)
    print(f"jal-plugins engine : {fast:8.1f} s   test accuracy {fast_acc:.2%}")
    if not args.skip_reference:
        ref, ref_acc = reference_run(x, y, xt, yt, args.epochs, device, args.workers, mean, std)
        print(f"reference-style    : {ref:8.1f} s   test accuracy {ref_acc:.2%}")
        print(f"speed-up           : {ref / fast:8.2f}x")


if __name__ == "__main__":
    main()
