"""LightningDataModules: interchangeable data for the tasks."""

from datamodules.text import TextDataModule

__all__ = ["TextDataModule"]
