import numpy as np
from pydantic import BaseModel

from services import ballast_service


class Wine(BaseModel):
    alcohol: float
    malic_acid: float
    ash: float
    alcalinity_of_ash: float
    magnesium: float
    total_phenols: float
    flavanoids: float
    nonflavanoid_phenols: float
    proanthocyanins: float
    color_intensity: float
    hue: float
    od280_od315_of_diluted_wines: float
    proline: float


def most_common_cultivar(wines: list[Wine]) -> dict[str, np.ndarray]:
    n = len(wines)
    return {"label": np.ones(n, np.int64), "probabilities": np.tile(np.array([0.33, 0.40, 0.27], np.float32), (n, 1))}


WineService = ballast_service(
    "wine", models=["wine-gbt", "wine-logreg"], request=Wine, rules=most_common_cultivar, learn_ranges=True
)
