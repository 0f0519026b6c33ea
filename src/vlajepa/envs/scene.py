"""MuJoCo-level scene handling shared by the environment, the perturbations and the domain shift.

Three jobs:

* **Views.** Every camera is a :class:`CameraView` rendered as a MuJoCo *free* camera (look-at point,
  distance, azimuth, elevation, field of view). A view needs no ``mj_forward`` to move, has no roll (so
  MetaWorld's 180°-rolled ``corner*`` cameras come out upright without flipping), and is perturbed by the same
  arithmetic whatever camera it started from. MetaWorld's static cameras are converted to equivalent views.
* **Model edits.** :class:`SceneEditor` makes every appearance edit (lights, background colours and textures,
  arm colours) and undoes them all on :meth:`SceneEditor.restore`, because MuJoCo model edits survive
  ``env.reset()``.
* **Rendering.** :class:`FrameRenderer` owns one offscreen ``mujoco.Renderer`` and uploads edited textures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import mujoco
import numpy as np

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class CameraView:
    """A free camera looking at ``lookat`` from ``distance`` metres at (``azimuth``, ``elevation``)."""

    lookat: Vec3  # world point at the image centre
    distance: float  # metres from the camera to ``lookat``
    azimuth: float  # degrees; 90 looks along +y (away from the robot base)
    elevation: float  # degrees; negative looks down
    fovy: float = 45.0  # vertical field of view in degrees

    def moved(self, change: ViewChange) -> CameraView:
        """This view orbited, zoomed and shifted; elevation stays in [-85, -5] so the table stays in view."""
        return replace(
            self,
            lookat=tuple(float(a + b) for a, b in zip(self.lookat, change.lookat_shift, strict=True)),
            distance=self.distance * change.distance_scale,
            azimuth=self.azimuth + change.d_azimuth,
            elevation=float(np.clip(self.elevation + change.d_elevation, -85.0, -5.0)),
            fovy=float(np.clip(self.fovy + change.d_fovy, 20.0, 90.0)),
        )


@dataclass(frozen=True)
class ViewChange:
    """A relative camera move: orbit about the look-at point, zoom, shift and field-of-view change."""

    d_azimuth: float = 0.0  # degrees
    d_elevation: float = 0.0  # degrees
    distance_scale: float = 1.0  # multiplies the distance to the look-at point
    lookat_shift: Vec3 = (0.0, 0.0, 0.0)  # metres
    d_fovy: float = 0.0  # degrees


# Views defined by this project, by name. "workspace_oblique" looks down 38° at the table centre from the
# robot's right, close enough that pucks, handles and goal markers of all MT10 tasks are several pixels wide
# at 96 px while every MT10 object and goal (x from -0.35 to 0.3) stays in frame, unlike MetaWorld's cameras.
CAMERA_VIEWS: dict[str, CameraView] = {
    "workspace_oblique": CameraView(lookat=(-0.03, 0.7, 0.1), distance=1.25, azimuth=130.0, elevation=-38.0),
}
DEFAULT_CAMERA = "workspace_oblique"

# MetaWorld's cameras fixed in the world (behindGripper and gripperPOV ride on the hand and are not offered).
STATIC_MODEL_CAMERAS: tuple[str, ...] = ("topview", "corner", "corner2", "corner3", "corner4")
CAMERAS: tuple[str, ...] = (*CAMERA_VIEWS, *STATIC_MODEL_CAMERAS)


def resolve_view(model: mujoco.MjModel, data: mujoco.MjData, camera: str) -> CameraView:
    """The view called ``camera``: a project view, or a static MetaWorld camera expressed as a free camera."""
    if camera in CAMERA_VIEWS:
        return CAMERA_VIEWS[camera]
    if camera not in STATIC_MODEL_CAMERAS:
        raise ValueError(f"unknown camera {camera!r}; expected one of {', '.join(CAMERAS)}")
    cam_id = model.camera(camera).id
    mujoco.mj_forward(model, data)
    position = data.cam_xpos[cam_id].copy()
    axes = data.cam_xmat[cam_id].reshape(3, 3)
    forward, up = -axes[:, 2], axes[:, 1]
    # A camera looking straight down has no horizontal heading: take it from the image's up direction instead.
    heading = forward[:2] if np.linalg.norm(forward[:2]) > 1e-3 else up[:2]
    distance = -position[2] / forward[2] if forward[2] < -1e-3 else 1.0  # to the floor plane z = 0
    lookat = position + distance * forward
    return CameraView(
        lookat=tuple(float(v) for v in lookat),
        distance=float(distance),
        azimuth=math.degrees(math.atan2(heading[1], heading[0])),
        elevation=math.degrees(math.asin(float(np.clip(forward[2], -1.0, 1.0)))),
        fovy=float(model.cam_fovy[cam_id]),
    )


def apply_fast_render_settings(model: mujoco.MjModel) -> None:
    """No shadows, reflections or multisampling: ~13 ms instead of 90-290 ms per frame on CPU."""
    model.light_castshadow[:] = 0
    model.mat_reflectance[:] = 0
    model.vis.quality.offsamples = 0


class FrameRenderer:
    """Offscreen RGB rendering of square frames from a :class:`CameraView`."""

    def __init__(self, model: mujoco.MjModel, size: int) -> None:
        self._model = model
        try:
            self._renderer = mujoco.Renderer(model, height=size, width=size)
        except mujoco.FatalError as err:
            raise RuntimeError(
                f"MuJoCo offscreen rendering failed ({err}). MuJoCo picks its OpenGL back-end when it is first "
                "imported: set MUJOCO_GL=egl (or osmesa) in the environment, or import vlajepa.envs before "
                "mujoco, and install libegl1 libgl1 libegl-mesa0."
            ) from err
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FREE

    def render(self, data: mujoco.MjData, view: CameraView) -> np.ndarray:
        """uint8 [size, size, 3], upright."""
        self._camera.lookat[:] = view.lookat
        self._camera.distance = view.distance
        self._camera.azimuth = view.azimuth
        self._camera.elevation = view.elevation
        self._model.vis.global_.fovy = view.fovy  # free cameras take their field of view from the model
        self._renderer.update_scene(data, camera=self._camera)
        return self._renderer.render()

    def upload_texture(self, texture_id: int) -> None:
        """Send an edited texture to the GPU context; MuJoCo reads textures only when a context is created."""
        # mujoco.Renderer has no public handle on its contexts; these attributes are stable since mujoco 2.3.
        gl_context = self._renderer._gl_context
        if gl_context is not None:
            gl_context.make_current()
        mujoco.mjr_uploadTexture(self._model, self._renderer._mjr_context, texture_id)

    def close(self) -> None:
        self._renderer.close()


@dataclass(frozen=True)
class LightingChange:
    """A change of every light: scaled, tinted and turned about the vertical axis."""

    brightness: float = 1.0  # multiplies diffuse, ambient and specular light
    tint: Vec3 = (1.0, 1.0, 1.0)  # per-channel multiplier of light colour
    rotate_deg: float = 0.0  # turns the directional lights about the world z axis
    ambient: float = 0.0  # extra ambient light added to every light (washes out shading when > 0)


@dataclass(frozen=True)
class SurfaceLook:
    """The appearance of one background surface (table top, floor, walls or sky)."""

    tint: Vec3 = (1.0, 1.0, 1.0)  # multiplies the surface's material colour (and so its texture)
    pattern: str | None = None  # None keeps the texture; "solid", "checker", "stripes", "blotches" repaint
    colors: tuple[Vec3, Vec3] = ((0.5, 0.5, 0.5), (0.8, 0.8, 0.8))  # the pattern's two colours, RGB in [0, 1]
    cells: int = 8  # pattern repeats across the texture
    pattern_seed: int = 0  # seeds the "blotches" pattern


# surface -> (material name, texture name); a task model may lack some (e.g. no walls in hand-insert).
BACKGROUND_SURFACES: dict[str, tuple[str | None, str | None]] = {
    "table": ("table_wood", "T_table"),
    "floor": ("basic_floor", "T_floor"),
    "wall": ("wall_metal", "T_wallmetal"),
    "sky": (None, None),  # the skybox texture has no name; found by type
}


def _subtree(model: mujoco.MjModel, root: int) -> set[int]:
    bodies = {root}
    for body in range(root + 1, model.nbody):  # MuJoCo numbers children after their parents
        if int(model.body_parentid[body]) in bodies:
            bodies.add(body)
    return bodies


def arm_geom_ids(model: mujoco.MjModel) -> np.ndarray:
    """Visible geoms of the robot (arm, pedestal, head) except the gripper (``hand`` and its fingers)."""
    robot = _subtree(model, model.body("base").id)
    gripper = _subtree(model, model.body("hand").id)
    arm = robot - gripper
    visible_groups = (0, 1, 2)  # MuJoCo renders geom groups 0-2 by default; 3-5 hold collision geoms
    ids = [
        geom
        for geom in range(model.ngeom)
        if int(model.geom_bodyid[geom]) in arm and int(model.geom_group[geom]) in visible_groups
    ]
    return np.asarray(ids, dtype=np.int64)


def _texture_id(model: mujoco.MjModel, surface: str) -> int | None:
    if surface == "sky":
        skyboxes = np.flatnonzero(model.tex_type == mujoco.mjtTexture.mjTEXTURE_SKYBOX)
        return int(skyboxes[0]) if len(skyboxes) else None
    name = BACKGROUND_SURFACES[surface][1]
    texture = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_TEXTURE, name)
    return texture if texture >= 0 else None


def paint_pattern(height: int, width: int, look: SurfaceLook) -> np.ndarray:
    """uint8 [height, width, 3] procedural texture for ``look.pattern``.

    Every pattern is constant over a ``cells`` x ``cells`` grid, so colours are mixed per cell and then
    expanded to texture size by indexing (a 1024² texture takes a few milliseconds).
    """
    cells = max(1, int(look.cells))
    cell_row, cell_col = np.indices((cells, cells))
    if look.pattern == "solid":
        mix = np.zeros((cells, cells), dtype=np.float32)
    elif look.pattern == "checker":
        mix = ((cell_row + cell_col) % 2).astype(np.float32)
    elif look.pattern == "stripes":
        mix = (cell_col % 2).astype(np.float32)
    elif look.pattern == "blotches":
        mix = np.random.default_rng(look.pattern_seed).random((cells, cells), dtype=np.float32)
    else:
        raise ValueError(f"unknown texture pattern {look.pattern!r}")
    color_a = np.asarray(look.colors[0], dtype=np.float32)
    color_b = np.asarray(look.colors[1], dtype=np.float32)
    cell_colors = np.clip(color_a + mix[..., None] * (color_b - color_a), 0.0, 1.0)
    cell_colors = (cell_colors * 255).astype(np.uint8)  # (cells, cells, 3)
    row_repeats = np.bincount(np.arange(height) * cells // height, minlength=cells)
    col_repeats = np.bincount(np.arange(width) * cells // width, minlength=cells)
    return np.repeat(np.repeat(cell_colors, row_repeats, axis=0), col_repeats, axis=1)  # (height, width, 3)


class SceneEditor:
    """Appearance edits to one model, all undone by :meth:`restore`.

    Takes a snapshot of the model's original lights, material and geom colours at construction; textures are
    copied the first time they are repainted. Texture changes reach the renderer in :meth:`flush`, so a texture
    repainted in every episode is uploaded once per episode, not once to restore it and once to repaint it.
    """

    def __init__(self, model: mujoco.MjModel, renderer: FrameRenderer) -> None:
        self._model = model
        self._renderer = renderer
        self._light = {
            "dir": model.light_dir.copy(),
            "pos": model.light_pos.copy(),
            "diffuse": model.light_diffuse.copy(),
            "ambient": model.light_ambient.copy(),
            "specular": model.light_specular.copy(),
        }
        headlight = model.vis.headlight
        self._headlight = (headlight.ambient.copy(), headlight.diffuse.copy(), headlight.specular.copy())
        self._mat_rgba = model.mat_rgba.copy()
        self._geom_rgba = model.geom_rgba.copy()
        self._original_textures: dict[int, np.ndarray] = {}
        self._edited_textures: set[int] = set()  # repainted since the last restore
        self._to_restore: set[int] = set()  # repainted before the last restore, original not yet written back
        self._to_upload: set[int] = set()
        self.arm_geoms = arm_geom_ids(model)

    def restore(self) -> None:
        """Undo every edit since construction (textures are written back by the next :meth:`flush`)."""
        model = self._model
        model.light_dir[:] = self._light["dir"]
        model.light_pos[:] = self._light["pos"]
        model.light_diffuse[:] = self._light["diffuse"]
        model.light_ambient[:] = self._light["ambient"]
        model.light_specular[:] = self._light["specular"]
        model.vis.headlight.ambient[:], model.vis.headlight.diffuse[:], model.vis.headlight.specular[:] = (
            self._headlight
        )
        model.mat_rgba[:] = self._mat_rgba
        model.geom_rgba[:] = self._geom_rgba
        self._to_restore |= self._edited_textures
        self._edited_textures = set()

    def flush(self) -> None:
        """Write back textures that were restored and not repainted, and upload every changed texture."""
        for texture in self._to_restore:
            self._texture_pixels(texture)[:] = self._original_textures[texture]
            self._to_upload.add(texture)
        self._to_restore.clear()
        for texture in self._to_upload:
            self._renderer.upload_texture(texture)
        self._to_upload.clear()

    def set_lighting(self, change: LightingChange) -> None:
        model = self._model
        gain = change.brightness * np.asarray(change.tint, dtype=np.float32)
        angle = math.radians(change.rotate_deg)
        cos, sin = math.cos(angle), math.sin(angle)
        turn = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
        model.light_dir[:] = self._light["dir"] @ turn.T
        model.light_pos[:] = self._light["pos"] @ turn.T
        model.light_diffuse[:] = np.clip(self._light["diffuse"] * gain, 0.0, 1.0)
        model.light_specular[:] = np.clip(self._light["specular"] * gain, 0.0, 1.0)
        model.light_ambient[:] = np.clip(self._light["ambient"] * gain + change.ambient, 0.0, 1.0)
        ambient, diffuse, specular = self._headlight
        model.vis.headlight.ambient[:] = np.clip(ambient * gain + change.ambient, 0.0, 1.0)
        model.vis.headlight.diffuse[:] = np.clip(diffuse * gain, 0.0, 1.0)
        model.vis.headlight.specular[:] = np.clip(specular * gain, 0.0, 1.0)

    def set_surface(self, surface: str, look: SurfaceLook) -> None:
        """Tint and optionally repaint one background surface; surfaces the model lacks are skipped."""
        material_name = BACKGROUND_SURFACES[surface][0]
        if material_name is not None:
            material = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_MATERIAL, material_name)
            if material >= 0:
                self._model.mat_rgba[material, :3] = np.clip(
                    self._mat_rgba[material, :3] * np.asarray(look.tint), 0.0, 1.0
                )
        if look.pattern is None:
            return
        texture = _texture_id(self._model, surface)
        if texture is None:
            return
        pixels = self._texture_pixels(texture)
        if texture not in self._original_textures:
            self._original_textures[texture] = pixels.copy()
        pixels[:] = paint_pattern(pixels.shape[0], pixels.shape[1], look)
        self._edited_textures.add(texture)
        self._to_restore.discard(texture)
        self._to_upload.add(texture)

    def hide_arm(self) -> None:
        """Make the arm fully transparent so only the gripper is drawn."""
        self._model.geom_rgba[self.arm_geoms, 3] = 0.0

    def recolor_arm(self, rgb: Vec3) -> None:
        self._model.geom_rgba[self.arm_geoms, :3] = rgb

    def _texture_pixels(self, texture: int) -> np.ndarray:
        """A writable [height, width, 3] view of a texture's data (cube and skybox faces share one image)."""
        model = self._model
        height, width, channels = (int(model.tex_height[texture]), int(model.tex_width[texture]),
                                   int(model.tex_nchannel[texture]))
        start = int(model.tex_adr[texture])
        flat = model.tex_data[start : start + height * width * channels]
        return flat.reshape(height, width, channels)[..., :3]
