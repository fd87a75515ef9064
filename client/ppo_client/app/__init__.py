"""``ppo-client app``: a local web app in which a person rates images, trains their taste model,
watches an optimization and judges its result blind. Needs the ``app`` extra (starlette, uvicorn,
jinja2): ``pip install 'ppo-t2i[app]'``."""
