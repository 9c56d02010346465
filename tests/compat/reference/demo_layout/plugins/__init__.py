# marks the folder as a package, as aetherflow-core's demo plugin folders do
