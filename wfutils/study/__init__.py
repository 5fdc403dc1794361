"""Running the study: profiles, the papermill pipeline, the book and its browser check."""
