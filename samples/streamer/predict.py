import random
import time
from typing import Iterator


class Predictor:
    def setup(self):
        words = open("weights/corpus.txt", encoding="utf-8").read().replace(".", " .").split()
        self.next_words = {}
        for current, following in zip(words, words[1:]):
            self.next_words.setdefault(current, []).append(following)
        self.starts = sorted(self.next_words)

    def predict(self, prompt: str = "the river", max_words: int = 30, seed: int = 0, delay: float = 0.02) -> Iterator[str]:
        rng = random.Random(seed)
        words = prompt.lower().split() or [rng.choice(self.starts)]
        current = words[-1] if words[-1] in self.next_words else rng.choice(self.starts)
        print(f"generating {max_words} words after {current!r}")
        for index in range(max_words):
            current = rng.choice(self.next_words.get(current) or self.starts)
            time.sleep(delay)
            yield current if current == "." else " " + current
