"""The Gradio app (`python demos/app.py`) and its tabs."""
