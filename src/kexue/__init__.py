"""kexue: the techniques of the Scientific Spaces blog (kexue.fm) for PyTorch and Hugging Face users."""

__version__ = "0.1.0"
