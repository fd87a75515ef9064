"""Training the demo world's models: VAE, CLIP, UNet, and the tokenizer they share."""
