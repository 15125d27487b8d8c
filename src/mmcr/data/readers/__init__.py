"""One reader per on-disk format, each registered here as a built-in data set.

========================  ====================================================================
name                      format (module)
========================  ====================================================================
``"fashion-mnist"``       idx files (gzipped or not), e.g. from Debian's ``dataset-fashion-mnist``
                          (:mod:`~mmcr.data.readers.idx`)
``"digits"``              scikit-learn's ``load_digits`` (always present; the data for fast tests)
                          (:mod:`~mmcr.data.readers.digits`)
``"cifar10"``             the python pickle folder ``cifar-10-batches-py``
                          (:mod:`~mmcr.data.readers.cifar`)
``"cifar100"``            the python pickle folder ``cifar-100-python`` (fine labels)
``"stl10"``               the binary folder ``stl10_binary`` (:mod:`~mmcr.data.readers.stl10`)
``"imagefolder"``         a tree ``root/<split>/<class>/*.png`` (or ``root/<class>/*``)
                          (:mod:`~mmcr.data.readers.imagefolder`)
``"synthetic"``           random class-structured images for smoke tests
                          (:mod:`~mmcr.data.readers.synthetic`)
``"webdataset"``          tar shards ``root/<split>/*.tar`` of images and ``.cls`` classes
                          (:mod:`~mmcr.data.readers.webdataset`); with ``paired = true``,
                          images and ``.txt`` captions (:mod:`mmcr.data.paired`)
``"emoji-images"``        the labelled emoji glyphs as images (CLDR category), with captions
                          (:mod:`~mmcr.data.readers.emoji`; ``"emoji"`` itself is paired)
``"emoji-subcategory"``   the same images labelled by CLDR sub-category
========================  ====================================================================

Nothing is ever downloaded. Missing or corrupt data raise ``FileNotFoundError`` or
``ValueError`` with a message naming the files looked for, the directories searched, and
how to get the data.

A new format is one module that defines a loader (a function of one
:class:`~mmcr.data.DatasetRequest` that returns an :class:`~mmcr.data.ImageDataset`) and
its :class:`~mmcr.data.DatasetInfo`, plus one line in :data:`BUILTIN_DATASETS`; a data set
outside the package is registered with :func:`~mmcr.data.register_dataset`.
"""

from mmcr.data.readers.cifar import CIFAR10, CIFAR100
from mmcr.data.readers.digits import DIGITS
from mmcr.data.readers.emoji import EMOJI_IMAGES, EMOJI_SUBCATEGORY
from mmcr.data.readers.idx import FASHION_MNIST
from mmcr.data.readers.imagefolder import IMAGEFOLDER
from mmcr.data.readers.stl10 import STL10
from mmcr.data.readers.synthetic import SYNTHETIC
from mmcr.data.readers.webdataset import WEBDATASET
from mmcr.data.registry import register_dataset

#: The data sets registered when :mod:`mmcr.data` is imported.
BUILTIN_DATASETS = (FASHION_MNIST, DIGITS, CIFAR10, CIFAR100, STL10, IMAGEFOLDER, SYNTHETIC, WEBDATASET)
#: The image-only views of a paired data set (the labelled emoji with their captions),
#: registered beside them; the paired entries themselves are registered by :mod:`mmcr.data`.
PAIRED_IMAGE_DATASETS = (EMOJI_IMAGES, EMOJI_SUBCATEGORY)

for _info in (*BUILTIN_DATASETS, *PAIRED_IMAGE_DATASETS):
    register_dataset(_info)

__all__ = ["BUILTIN_DATASETS", "PAIRED_IMAGE_DATASETS"]
