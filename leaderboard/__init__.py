"""Results files, the paper's reference numbers, and the leaderboard builder."""
