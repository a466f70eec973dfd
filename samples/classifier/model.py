"""Features shared by training and prediction: lowercase word unigrams and bigrams."""
import re

WORD = re.compile(r"[a-z']+")


def features(text):
    words = WORD.findall(text.lower())
    return words + [a + " " + b for a, b in zip(words, words[1:])]
