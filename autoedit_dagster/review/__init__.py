"""The review page's data: what a reviewer sees of each video, and the decisions recorded."""
