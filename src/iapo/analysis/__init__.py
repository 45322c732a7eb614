"""The paper's analyses (Section 4.2): each reads a run's snapshots and writes figures and numbers."""
