"""The YAML presets of Pix2Pix runs (`negaug train pix2pix-scenes`, `TranslationConfig`), kept
apart from the GAN presets: `negaug train` dispatches to the translation path for these."""
