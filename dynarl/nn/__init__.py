"""Network building blocks: MLPs, vectorised ensemble layers, policy and value heads, normalisers."""
