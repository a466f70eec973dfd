class Predictor:
    def setup(self):
        """Runs once per instance: load weights here."""
        self.greeting = "Hello"

    def predict(self, text: str, excitement: int = 1) -> str:
        return f"{self.greeting}, {text}" + "!" * excitement
