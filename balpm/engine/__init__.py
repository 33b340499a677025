"""The science of one selection round: the reward ensemble (model), its uncertainty, the diagnostics of
U against beta*H, and the entropy of the acquired prompts (entropy: the estimators; knn: the exact kNN
engine under them). The policies that combine them are :mod:`balpm.acquisition`.
"""
