#!/usr/bin/python3
"""The PyTorch side of `bench/compare.ts`: the same workload as `osteo bench train|infer`.

torchvision's architecture with a 3-class head, Adam, cross-entropy, random normalized-range images,
N warm-up steps excluded, median step time. Run with Debian's /usr/bin/python3 (PyTorch 1.13).
Prints one JSON object.
"""
import argparse
import json
import statistics
import sys
import time

try:
    import torch
    import torchvision
except ImportError as error:  # the caller reports this; the message says what to install
    sys.stderr.write(f"PyTorch/torchvision missing for {sys.executable}: {error} (Debian: apt-get install python3-torch python3-torchvision)\n")
    sys.exit(3)


def build(name: str) -> torch.nn.Module:
    if name == "efficientnet_b3":
        model = torchvision.models.efficientnet_b3(weights=None)
        # the dashboard's head, as osteo builds it
        model.classifier = torch.nn.Sequential(
            torch.nn.Dropout(0.3), torch.nn.Linear(1536, 512), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(512, 3)
        )
        return model
    return getattr(torchvision.models, name)(weights=None, num_classes=3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "infer"])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (scripts/gpu-check.sh: fp32, cuDNN autotuning off)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        # fp32 as osteo computes: no TF32 matmuls or convolutions on Ampere and later
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build(args.model).to(device)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    labels = (torch.arange(args.batch_size) % 3).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    if args.mode == "train":
        model.train()
    else:
        model.eval()

    def step() -> None:
        if args.mode == "train":
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
        else:
            with torch.no_grad():
                model(images)

    times = []
    cpu_times = []  # process CPU time (all threads) per step: less sensitive to other jobs than wall time
    for index in range(args.warmup + args.steps):
        start = time.perf_counter()
        cpu_start = time.process_time()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()  # the GPU runs asynchronously: time the work, not its launch
        elapsed = (time.perf_counter() - start) * 1000
        cpu_elapsed = (time.process_time() - cpu_start) * 1000
        if index >= args.warmup:
            times.append(elapsed)
            cpu_times.append(cpu_elapsed)
    median = statistics.median(times)
    print(json.dumps({
        "framework": f"pytorch {torch.__version__}",
        "mode": args.mode,
        "model": args.model,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "imageSize": args.image_size,
        "batchSize": args.batch_size,
        "stepsTimed": len(times),
        "medianStepMs": median,
        "imagesPerSec": args.batch_size / (median / 1000),
        "stepMs": times,
        "medianCpuStepMs": statistics.median(cpu_times),
        "cpuStepMs": cpu_times,
    }))


if __name__ == "__main__":
    main()
