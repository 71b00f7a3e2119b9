import { useEffect, useRef, useState } from "react";
import * as THREE from "three";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";
import { STLLoader } from "three/examples/jsm/loaders/STLLoader.js";
import { t } from "../i18n";
import { loadSession } from "../session";

export interface MeshRoi {
  number: number;
  name: string;
  meshUrl?: string | null;
}

const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"];

async function stl(url: string): Promise<ArrayBuffer> {
  const token = loadSession()?.token;
  const response = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.arrayBuffer();
}

/** The ROIs' STL meshes in 3D (three.js; this module is a lazy chunk): orbit with the
 * mouse, each ROI shown or hidden and coloured. */
export default function MeshView({ rois }: { rois: MeshRoi[] }) {
  const host = useRef<HTMLDivElement>(null);
  const meshes = useRef(new Map<number, THREE.Mesh>());
  const render = useRef<() => void>(() => {});
  const [shown, setShown] = useState<Record<number, boolean>>(() => Object.fromEntries(rois.map((r) => [r.number, true])));
  const [colours, setColours] = useState<Record<number, string>>(() =>
    Object.fromEntries(rois.map((r, i) => [r.number, PALETTE[i % PALETTE.length]])),
  );
  const [state, setState] = useState<"loading" | "ready" | "error">("loading");

  useEffect(() => {
    const element = host.current;
    if (!element) return;
    const width = element.clientWidth || 600;
    const height = 360;
    const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    renderer.setSize(width, height);
    renderer.setClearColor(0x14213d);
    element.appendChild(renderer.domElement);
    const scene = new THREE.Scene();
    scene.add(new THREE.AmbientLight(0xffffff, 0.6));
    const light = new THREE.DirectionalLight(0xffffff, 1.2);
    scene.add(light);
    const camera = new THREE.PerspectiveCamera(40, width / height, 0.1, 10_000);
    const controls = new OrbitControls(camera, renderer.domElement);
    const draw = () => {
      light.position.copy(camera.position);
      renderer.render(scene, camera);
    };
    render.current = draw;
    controls.addEventListener("change", draw);
    let cancelled = false;
    const loader = new STLLoader();
    Promise.all(
      rois.filter((r) => r.meshUrl).map(async (r) => {
        const geometry = loader.parse(await stl(r.meshUrl!));
        geometry.computeVertexNormals();
        const mesh = new THREE.Mesh(geometry, new THREE.MeshStandardMaterial({ color: colours[r.number] }));
        meshes.current.set(r.number, mesh);
        scene.add(mesh);
      }),
    )
      .then(() => {
        if (cancelled) return;
        const box = new THREE.Box3().setFromObject(scene);
        const centre = box.getCenter(new THREE.Vector3());
        const size = box.getSize(new THREE.Vector3()).length() || 100;
        camera.position.copy(centre).add(new THREE.Vector3(size * 0.6, -size * 0.9, size * 0.6));
        camera.up.set(0, 0, 1);
        controls.target.copy(centre);
        controls.update();
        draw();
        setState("ready");
      })
      .catch(() => !cancelled && setState("error"));
    return () => {
      cancelled = true;
      controls.dispose();
      renderer.dispose();
      element.removeChild(renderer.domElement);
      meshes.current.clear();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [rois]);

  useEffect(() => {
    for (const [n, mesh] of meshes.current) {
      mesh.visible = shown[n] ?? true;
      (mesh.material as THREE.MeshStandardMaterial).color.set(colours[n]);
    }
    render.current();
  }, [shown, colours, state]);

  return (
    <div className="mesh-view" data-state={state}>
      <div ref={host} className="mesh-canvas" aria-label={t.rtstruct.view3d} role="img" />
      {state === "loading" ? <p className="muted">{t.common.loading}</p> : null}
      {state === "error" ? <p className="error" role="alert">{t.rtstruct.meshError}</p> : null}
      <ul className="mesh-rois">
        {rois.map((r) => (
          <li key={r.number}>
            <label className="check">
              <input type="checkbox" checked={shown[r.number] ?? true}
                onChange={(e) => setShown({ ...shown, [r.number]: e.target.checked })} />
              <span>{r.name}</span>
            </label>
            <input type="color" aria-label={t.rtstruct.colour(r.name)} value={colours[r.number]}
              onChange={(e) => setColours({ ...colours, [r.number]: e.target.value })} />
          </li>
        ))}
      </ul>
    </div>
  );
}
