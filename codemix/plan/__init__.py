"""Planning: what a recipe's stages need, worked out from the recipe and the corpus before any compute."""
