"""Generate the mesh files of this directory (structured image meshes are never stored: see README.md).

``roi_disc.msh``: an unstructured all-quadrilateral mesh of a disc-shaped region of interest in scikit-image's
``coins`` picture (303×384 pixels), in the pixel coordinates of :func:`fem_crossdiff.images.image_mesh`
(x = column, y = 302 − row): centre (207, 107), radius 36 pixels — one coin and a ring of background.
Made with gmsh (``pip install gmsh``): frontal-Delaunay for quads, Blossom full-quad recombination, target size
1.5 pixels. Physical tags: surface 1 (the disc), curve 1 (the circle).

Run: ``python meshes/make_meshes.py [--size 1.5] [--out meshes/roi_disc.msh]``.
"""
import argparse
import os

#: The region of interest, in pixel units of the coins image.
ROI = dict(image="coins", centre=(207.0, 107.0), radius=36.0)


def make_roi_disc(path, size=1.5, centre=ROI["centre"], radius=ROI["radius"]):
    """Mesh the disc with quadrilaterals only and write it (gmsh MSH 2.2, ASCII) to ``path``."""
    import gmsh
    gmsh.initialize(["gmsh", "-v", "2"])
    try:
        gmsh.model.add("roi_disc")
        disk = gmsh.model.occ.addDisk(centre[0], centre[1], 0.0, radius, radius)
        gmsh.model.occ.synchronize()
        curves = [tag for dim, tag in gmsh.model.getBoundary([(2, disk)], oriented=False)]
        gmsh.model.addPhysicalGroup(2, [disk], 1, name="roi")
        gmsh.model.addPhysicalGroup(1, curves, 1, name="circle")
        gmsh.option.setNumber("Mesh.MeshSizeMin", size)
        gmsh.option.setNumber("Mesh.MeshSizeMax", size)
        gmsh.option.setNumber("Mesh.Algorithm", 8)               # frontal-Delaunay for quads
        gmsh.option.setNumber("Mesh.RecombinationAlgorithm", 3)  # Blossom full-quad
        gmsh.option.setNumber("Mesh.RecombineAll", 1)
        gmsh.option.setNumber("Mesh.MshFileVersion", 2.2)
        gmsh.model.mesh.generate(2)
        gmsh.model.mesh.optimize("Laplace2D")
        gmsh.write(path)
    finally:
        gmsh.finalize()
    return path


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=float, default=1.5, help="target cell size in pixels (default 1.5)")
    p.add_argument("--out", default=os.path.join(here, "roi_disc.msh"))
    args = p.parse_args()
    make_roi_disc(args.out, args.size)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KB)")
