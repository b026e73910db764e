"""LightningDataModules: interchangeable data for the tasks."""

from datamodules.images import ImageDataModule
from datamodules.labeled_text import LabeledTextDataModule
from datamodules.prompts import PromptResponseDataModule
from datamodules.text import TextDataModule

__all__ = ["ImageDataModule", "LabeledTextDataModule", "PromptResponseDataModule", "TextDataModule"]
