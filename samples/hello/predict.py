class Predictor:
    def setup(self):
        self.greeting = "Hello"

    def predict(self, text: str) -> str:
        print(f"greeting {text}")
        return f"{self.greeting}, {text}!"
