"""MLflow 3's agent interfaces (`ResponsesAgent`, `ChatAgent`) and their types."""
