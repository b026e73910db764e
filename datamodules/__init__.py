"""LightningDataModules: interchangeable data for the tasks."""

from datamodules.images import ImageDataModule
from datamodules.text import TextDataModule

__all__ = ["ImageDataModule", "TextDataModule"]
