"""The one chat pipeline and everything it runs on: dialects, admission, the model runtime."""
