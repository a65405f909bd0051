"""IGM model: encoder f, MDFF adapter h, generator g, diffusion, and the model + losses (igm)."""
