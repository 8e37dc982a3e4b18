"""Hugging Face Spaces entry point. The Gradio UI is not built yet (issue 5).

Until then this prints how to run the sampler from the command line.
"""

if __name__ == "__main__":
    print("stiffviz: the browser app is not built yet; it will open here (http://127.0.0.1:7860).")
    print("Meanwhile: python -m stiffviz sample --model tree --solver heun --steps 32 --metrics")
