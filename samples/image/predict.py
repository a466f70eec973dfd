import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps


class Predictor:
    def predict(self, image: Path, effect: str = "grayscale", strength: float = 1.0, caption: str = "") -> Path:
        original = Image.open(image).convert("RGB")
        print(f"{effect} at {strength:.2f} on a {original.width}x{original.height} image")
        if effect == "grayscale":
            filtered = ImageOps.grayscale(original).convert("RGB")
        elif effect == "invert":
            filtered = ImageOps.invert(original)
        elif effect == "sepia":
            filtered = ImageOps.colorize(ImageOps.grayscale(original), "#2e1f0f", "#f5e6c8")
        else:
            filtered = ImageOps.posterize(original, 2)
        result = Image.blend(original, filtered, strength)
        if caption:
            band = 24
            framed = Image.new("RGB", (result.width, result.height + band), "white")
            framed.paste(result, (0, 0))
            ImageDraw.Draw(framed).text((6, result.height + 6), caption, fill="black")
            result = framed
        output = Path(tempfile.mkdtemp()) / "filtered.png"
        result.save(output)
        return output
