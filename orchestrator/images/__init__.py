"""Golden images: definitions (images/*/*.yaml), their builders, and the catalog of built ones."""
