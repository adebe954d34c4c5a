"""Physical constants and unit conversions used across the package."""

#: Hartree in electronvolt (CODATA 2018, as used by PyG's QM9).
HARTREE_TO_EV = 27.211386246
#: Electronvolt in kcal/mol.
EV_TO_KCALMOL = 23.060547830619026
#: kcal/mol in electronvolt (PyG's QM9 constant).
KCALMOL_TO_EV = 0.04336414
#: Electronvolt in meV.
EV_TO_MEV = 1000.0

#: Reference energies of the free atoms H, C, N, O, F in Hartree, B3LYP/6-31G(2df,p),
#: from the QM9 atomref table: U0, U (298.15 K), H (298.15 K), G (298.15 K).
QM9_ATOM_ENERGIES_HARTREE = {
    1: (-0.500273, -0.498857, -0.497912, -0.510927),
    6: (-37.846772, -37.845355, -37.844411, -37.861317),
    7: (-54.583861, -54.582445, -54.581501, -54.598897),
    8: (-75.064579, -75.063162, -75.062219, -75.079532),
    9: (-99.718730, -99.717314, -99.716370, -99.733544),
}
