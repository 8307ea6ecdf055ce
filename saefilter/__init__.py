"""saefilter: find fine-tuning samples whose SAE features sit close to harmful features."""

__version__ = "0.1.0"
