"""mmrec_ray: recommendation from multi-modal user interactions (Bruun, Balog & Maistro, SIGIR 2024), on Ray."""

__version__ = "0.1.0"
