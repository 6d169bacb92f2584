"""What is trained: the regression model (conditional mean) and the residual EDM diffusion model."""
