import numpy as np

from model import features


class Predictor:
    def setup(self):
        weights = np.load("weights/model.npz")
        self.index = {feature: i for i, feature in enumerate(weights["vocabulary"].tolist())}
        self.coef = weights["coef"]
        self.bias = float(weights["bias"])

    def predict(self, text: str) -> dict:
        score = self.bias + sum(float(self.coef[self.index[f]]) for f in features(text) if f in self.index)
        probability = 1.0 / (1.0 + np.exp(-score))
        positive = probability >= 0.5
        return {"label": "positive" if positive else "negative",
                "score": round(float(probability if positive else 1.0 - probability), 4)}
