"""Trains the sentiment classifier and writes weights/model.npz.

    python3 train.py

Logistic regression on word and word-pair counts, fitted by full-batch gradient descent with L2
regularisation; deterministic, so the committed weights are what this script produces.
"""
import os

import numpy as np

from data import TRAIN
from model import features


def main():
    vocabulary = sorted({feature for text, _ in TRAIN for feature in features(text)})
    index = {feature: i for i, feature in enumerate(vocabulary)}
    x = np.zeros((len(TRAIN), len(vocabulary)), dtype=np.float64)
    y = np.array([1.0 if label == "positive" else 0.0 for _, label in TRAIN])
    for row, (text, _) in enumerate(TRAIN):
        for feature in features(text):
            x[row, index[feature]] += 1.0
    coef = np.zeros(len(vocabulary))
    bias = 0.0
    for _ in range(3000):
        p = 1.0 / (1.0 + np.exp(-(x @ coef + bias)))
        coef -= 0.5 * (x.T @ (p - y) / len(y) + 1e-3 * coef)
        bias -= 0.5 * float(np.mean(p - y))
    accuracy = float(np.mean((x @ coef + bias > 0) == (y > 0.5)))
    os.makedirs("weights", exist_ok=True)
    np.savez("weights/model.npz", vocabulary=np.array(vocabulary), coef=coef.astype(np.float32), bias=np.float32(bias))
    print(f"{len(vocabulary)} features, training accuracy {accuracy:.2f}")


if __name__ == "__main__":
    main()
