"""driftrec: recommendations that follow how a user's interests evolve."""
