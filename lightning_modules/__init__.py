"""LightningModules. Import the concrete modules directly (``lightning_modules.synthetic``)."""
