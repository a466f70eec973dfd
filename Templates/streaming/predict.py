import time
from typing import Iterator


class Predictor:
    def predict(self, prompt: str, words: int = 8) -> Iterator[str]:
        reply = f"You said {prompt!r} and here is a reply streamed one word at a time".split()
        for index in range(words):
            time.sleep(0.05)  # stands in for a model producing tokens
            yield ("" if index == 0 else " ") + reply[index % len(reply)]
