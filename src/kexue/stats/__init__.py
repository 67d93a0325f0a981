"""Analysis tools: FLOP counts, Gaussian divergences, the JL lemma, hubness, leaderboard means."""
