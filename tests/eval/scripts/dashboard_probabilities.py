"""Load osteo's dashboard export the way the dashboard does and print its probabilities.

Usage: dashboard_probabilities.py DASHBOARD_DIR FILE=IMAGE [FILE=IMAGE ...]
Each .pth is loaded with torch.load(weights_only=True) and a strict load_state_dict into the
architecture the dashboard builds; the image goes through Resize/CenterCrop/ToTensor/Normalize with
the sizes recorded in metadata.json (for the ResNets these are the dashboard's 256/224). Prints one
JSON object {file: [p0, p1, p2]}.
"""
import json
import os
import sys

import torch
import torch.nn as nn
import torchvision
from PIL import Image
from torchvision import transforms


def build(file):
    if file == "sydney_best_model.pth":
        model = torchvision.models.resnet18(weights=None)
        model.fc = nn.Linear(512, 3)
    elif file == "resnet50_best_model.pth":
        model = torchvision.models.resnet50(weights=None)
        model.fc = nn.Linear(2048, 3)
    elif file == "best_osteoporosis_model.pth":
        model = torchvision.models.efficientnet_b3(weights=None)
        model.classifier = nn.Sequential(
            nn.Dropout(0.3), nn.Linear(1536, 512), nn.ReLU(), nn.Dropout(0.3), nn.Linear(512, 3)
        )
    else:
        raise SystemExit(f"unknown dashboard file {file}")
    return model


def main():
    directory = sys.argv[1]
    with open(os.path.join(directory, "metadata.json")) as f:
        metadata = json.load(f)
    torch.set_num_threads(1)
    out = {}
    for pair in sys.argv[2:]:
        file, image_path = pair.split("=", 1)
        model = build(file)
        state = torch.load(os.path.join(directory, file), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        model.eval()
        pre = metadata["models"][file]["preprocessing"]
        transform = transforms.Compose(
            [
                transforms.Resize(pre["resize"]),
                transforms.CenterCrop(pre["crop"]),
                transforms.ToTensor(),
                transforms.Normalize(pre["mean"], pre["std"]),
            ]
        )
        x = transform(Image.open(image_path).convert("RGB")).unsqueeze(0)
        with torch.no_grad():
            p = torch.softmax(model(x), dim=1)[0]
        out[file] = [float(v) for v in p]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
