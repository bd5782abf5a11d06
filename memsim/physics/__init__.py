"""Error and energy models: curves and fault mechanisms evaluated at operating points."""
