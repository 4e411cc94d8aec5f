"""LightningDataModules. Import the concrete modules directly (``datamodules.synthetic``)."""
